"""`python -m harness generate`: Ray Data actors write images plus a metadata table; the images do
not depend on how many actors made them."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

ROOT = Path(__file__).resolve().parent.parent
# A line of Ray's own Python logging ("<time>\tINFO streaming_executor.py:215 -- ...").
RAY_LOG_LINE = re.compile(r"\t(DEBUG|INFO|WARNING) \S+\.py:\d+ -- ")


def _generate(harness_cache: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HARNESS_CACHE_DIR=str(harness_cache))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "generate",
            "--prompts",
            str(ROOT / "configs/prompts/default.toml"),
            "--out",
            str(out),
            "--count",
            "6",
            "--batch-size",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.slow  # two Ray Data pipelines; generate itself runs in the fast test below
def test_images_and_metadata_are_identical_with_one_and_two_actors(harness_cache: Path, tmp_path: Path) -> None:
    one = _generate(harness_cache, tmp_path / "one", "--workers", "1")
    two = _generate(harness_cache, tmp_path / "two", "--workers", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "two" / "metadata.csv").open()))
    assert [int(r["sample_index"]) for r in rows] == list(range(6))
    assert {r["category"] for r in rows} and all(r["prompt"] for r in rows)
    assert [int(r["seed"]) for r in rows] == list(range(6))  # latents.seed 0 + sample index
    meta = json.loads((tmp_path / "two" / "metadata.json").read_text())
    assert meta["actors"] == 2 and meta["images"] == 6
    for r in rows:
        a = np.asarray(Image.open(tmp_path / "one" / r["file"]))
        b = np.asarray(Image.open(tmp_path / "two" / r["file"]))
        assert a.shape == (64, 64, 3)
        assert np.array_equal(a, b), f"sample {r['sample_index']} differs between 1 and 2 actors"
    first = np.asarray(Image.open(tmp_path / "one" / rows[0]["file"]))
    assert any(not np.array_equal(first, np.asarray(Image.open(tmp_path / "one" / r["file"]))) for r in rows[1:])


def test_generate_refuses_a_non_empty_output_folder(harness_cache: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.txt").write_text("keep me")
    run = _generate(harness_cache, tmp_path / "taken", "--backend", "fake")
    assert run.returncode == 2 and "is not empty" in run.stderr


@pytest.mark.slow  # 16 s: a Ray Data pipeline; its refusals stay in the default set
def test_generate_keeps_rays_logs_and_deprecation_warnings_off_stderr(harness_cache: Path, tmp_path: Path) -> None:
    run = _generate(harness_cache, tmp_path / "quiet", "--backend", "fake", "--workers", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert not RAY_LOG_LINE.findall(run.stderr), run.stderr[-3000:]  # Ray Data logged a dozen INFO lines
    assert "deprecat" not in run.stderr.lower(), run.stderr[-3000:]  # map_batches(concurrency=) was deprecated
    assert len(list((tmp_path / "quiet" / "images").glob("*.png"))) == 6


def test_generate_refuses_an_unknown_ray_log_level(harness_cache: Path, tmp_path: Path) -> None:
    run = _generate(harness_cache, tmp_path / "out", "--backend", "fake", "--ray-log-level", "LOUD")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: --ray-log-level 'LOUD' is not a log level; choose one of: DEBUG, INFO, WARNING, ERROR"
    ]
    assert not (tmp_path / "out").exists()  # refused before any output or Ray start
