"""One way to run `python -m harness ...` in a child process, for the commands that run others (sweep,
scale, compare): each run gets a fresh process, so one run's memory, threads, caches and compiled code never
leak into the next.

    child = run_child(["--model", "tiny", "--output-dir", str(runs)], output_dir=runs, heartbeat="Offline b=4")
    child.returncode, child.run_dir, child.summary(), child.error_line()

The child finds this project's `harness` whatever the working directory (the project root goes first on its
PYTHONPATH). Its output is captured (`stderr`), or written to `log_path` with the command line on top.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import PROJECT_ROOT
from harness.console import Heartbeat
from harness.run.summary import RunSummary

TIMED_OUT = 124  # the exit code of a child that ran past its time limit (as timeout(1) reports it)


@dataclass(frozen=True)
class ChildRun:
    command: tuple[str, ...]
    returncode: int  # TIMED_OUT when it ran past timeout_s
    run_dir: Path | None  # the newest directory the child made in output_dir; None when it made none
    stderr: str = ""  # the child's stderr when captured; "" when it went to log_path
    log_path: Path | None = None

    @property
    def timed_out(self) -> bool:
        return self.returncode == TIMED_OUT

    def summary(self) -> RunSummary | None:
        """The run's summary.json, None when it wrote none (it stopped before LoadGen)."""
        return RunSummary.read_if_present(self.run_dir / "summary.json" if self.run_dir else None)

    def error_line(self) -> str:
        """Why the child failed: its last `error:` line, else its last line, else its exit code."""
        text = self.stderr
        if not text and self.log_path is not None and self.log_path.is_file():
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        return (errors or lines or [f"exit code {self.returncode}"])[-1].removeprefix("error: ")[-500:]


def harness_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_child(
    args: Sequence[str],
    *,
    output_dir: Path,
    heartbeat: str | None = None,
    log_path: Path | None = None,
    timeout_s: float | None = None,
) -> ChildRun:
    """Run `python -m harness ARGS` and wait; `output_dir` is where the child makes its run directory (the
    caller passes it in ARGS too). `heartbeat`: a label for a `still running` line every few seconds when
    stderr is not a terminal (see console.Heartbeat)."""
    cmd = harness_command(args)
    before = set(output_dir.iterdir()) if output_dir.exists() else set()
    beat = Heartbeat(heartbeat) if heartbeat else nullcontext()
    stderr = ""
    proc: subprocess.CompletedProcess[Any]
    try:
        with beat:
            if log_path is None:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=timeout_s)
                stderr = proc.stderr
            else:
                with log_path.open("w", encoding="utf-8") as f:
                    f.write(" ".join(cmd) + "\n\n")
                    f.flush()
                    proc = subprocess.run(
                        cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(), timeout=timeout_s, check=False
                    )
        code = proc.returncode
    except subprocess.TimeoutExpired as exc:
        code = TIMED_OUT
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    # directories only: output_dir also holds the run history (history.sqlite)
    made = sorted(p for p in set(output_dir.iterdir()) - before if p.is_dir()) if output_dir.exists() else []
    return ChildRun(tuple(cmd), code, made[-1] if made else None, stderr, log_path)
