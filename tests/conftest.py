"""Shared fixtures: a per-session harness cache (the tiny model is built once per test session),
and a helper that runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends.base import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def harness_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(os.environ.get("HARNESS_TEST_CACHE") or tmp_path_factory.mktemp("harness-cache"))
    os.environ["HARNESS_CACHE_DIR"] = str(path)
    return path


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path | None

    def summary(self) -> dict:
        assert self.run_dir is not None, self.stderr
        return json.loads((self.run_dir / "summary.json").read_text())

    def detail_log(self) -> str:
        assert self.run_dir is not None
        return (self.run_dir / "mlperf_log_detail.txt").read_text()


@pytest.fixture
def run_cli(harness_cache: Path, tmp_path: Path):
    """Run `python -m harness ARGS` in a subprocess with its own output dir."""

    def _run(*args: str, timeout: float = 240, cwd: Path | None = None) -> CliRun:
        out = tmp_path / "runs"
        env = dict(os.environ, HARNESS_CACHE_DIR=str(harness_cache), PYTHONPATH=str(ROOT))
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "--output-dir", str(out), "--no-progress", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd or tmp_path,
        )
        dirs = sorted(out.iterdir()) if out.exists() else []
        return CliRun(proc.returncode, proc.stdout, proc.stderr, dirs[-1] if dirs else None)

    return _run


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module, restored afterwards: on a shared 2-core machine, torch's default
    of every core made a 64 x 64 image take seconds instead of a tenth of one. Modules that run models
    in this process use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def spec(harness_cache: Path) -> ModelSpec:
    """The tiny SDXL-shaped model as backends see it: 8 steps, guidance 8, 64 x 64."""
    from backends.models.tiny_model import ensure_tiny_model

    return ModelSpec("tiny", str(ensure_tiny_model(harness_cache)), "StableDiffusionXLPipeline", 8, 8.0, 64, 64)


def run_main(*args: str, out: Path) -> tuple[int, Path | None]:
    """`python -m harness ARGS` through the CLI's main() in this process; (exit code, run dir).

    main() configures logging and torch threads for a whole process; both are put back afterwards.
    """
    import torch

    from harness.cli import main

    root = logging.getLogger()
    handlers, level, threads = list(root.handlers), root.level, torch.get_num_threads()
    try:
        code = main(["--output-dir", str(out), "--no-progress", *args])
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        torch.set_num_threads(threads)
    dirs = sorted(out.iterdir()) if out.exists() else []
    return code, (dirs[-1] if dirs else None)
