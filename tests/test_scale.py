"""`python -m harness scale`: one run per worker count, a table, a CSV and a plot."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from harness.commands.scale import COLUMNS

ROOT = Path(__file__).resolve().parent.parent


def test_scale_writes_throughput_speedup_and_efficiency(harness_cache: Path, tmp_path: Path) -> None:
    env = dict(os.environ, HARNESS_CACHE_DIR=str(harness_cache))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "scale",
            "--workers",
            "1,2",
            "--backend",
            "fake",
            "--output-dir",
            str(tmp_path),
            "--set",
            "backend.latency_ms=40",
            "--set",
            "loadgen.min_duration_ms=1500",
            "--set",
            "loadgen.offline_expected_qps=200",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = next(tmp_path.glob("*-scale-tiny-fake"))
    rows = json.loads((out / "scale.json").read_text())["rows"]
    assert [r["workers"] for r in rows] == [1, 2]
    assert rows[0]["speedup"] == 1.0 and rows[0]["efficiency"] == 1.0
    # A sleeping fake backend parallelises across processes: two workers nearly double throughput.
    assert rows[1]["samples_per_second"] > 1.5 * rows[0]["samples_per_second"]
    assert 0.75 < rows[1]["efficiency"] <= 1.1
    with (out / "scale.csv").open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == COLUMNS and len(table) == 2
    assert (out / "scale.png").stat().st_size > 5000
    assert "Scaling with the worker count" in (out / "report.md").read_text()
    assert (out / "tables" / "scale.csv").is_file() and (out / "report.html").is_file()
    assert "speedup" in proc.stdout


def test_scale_rejects_bad_counts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "scale", "--workers", "0,2"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2 and "worker counts must be >= 1" in proc.stderr
