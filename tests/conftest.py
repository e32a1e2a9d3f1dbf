"""Shared fixtures: a per-session harness cache (the tiny model is built once per test session), the
real CLI in a subprocess (`run_cli`) and the same CLI through its main() in this process
(`run_cli_in_process`), and Ray started at most once per session.

A child process (`run_cli`) is for what only a child process shows: `python -m harness` itself (one
run per command), a run that ends with LoadGen still running (the CLI exits the process hard), a
user.conf (LoadGen counts them per process), Ctrl-C, environment read at start-up. Every other run
goes through `run_cli_in_process`: the same arguments, exit code, stdout, stderr and run directory,
without paying the torch and diffusers import per run."""

from __future__ import annotations

import contextlib
import itertools
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
        dirs = sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []  # not history.sqlite
        return CliRun(proc.returncode, proc.stdout, proc.stderr, dirs[-1] if dirs else None)

    return _run


@pytest.fixture
def run_cli_in_process(harness_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`python -m harness ARGS` through harness.cli.main() in this process, in `cwd` (default: the test's
    tmp_path, as run_cli), each call with its own output dir. Returns run_cli's CliRun. Environment,
    logging handlers and torch threads are put back afterwards; an argparse refusal (SystemExit) is its
    exit code. Not for runs that fail with LoadGen still running, nor for a user.conf: see the module
    docstring."""
    calls = itertools.count()

    def _run(*args: str, cwd: Path | None = None) -> CliRun:
        from harness.run.cuda_allocator import apply_default_allocator_settings

        capsys.readouterr()
        environ = dict(os.environ)
        try:
            apply_default_allocator_settings()  # as harness/__main__.py does before main()
            with contextlib.chdir(cwd or tmp_path):
                code, run_dir = run_main(*args, out=tmp_path / f"runs-{next(calls)}")
        except SystemExit as exc:  # argparse: usage and the error on stderr, exit code 2
            code, run_dir = int(exc.code or 0), None
        finally:
            os.environ.clear()
            os.environ.update(environ)
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err, run_dir)

    return _run


@pytest.fixture(scope="session")
def ray_once() -> Iterator[None]:
    """Ray for the session: the first in-process run with workers.ray_address=local starts it (the harness
    joins a running instance instead of starting another), and it stops when the session ends."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


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
    dirs = sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []  # not history.sqlite
    return code, (dirs[-1] if dirs else None)
