"""A real `python -m harness serve` in a child process, on 127.0.0.1 at a free port, for tests.

    from tests.serve_fixture import running_server

    with running_server(["--backend", "fake", "--set", "sut.max_wait_ms=5"]) as base_url:
        httpx.post(f"{base_url}/v1/images/generations", json={"prompt": "a cat"})

`running_server(args, env=None, timeout_s=120) -> base_url` (a context manager): starts the server with
`--port 0` and ARGS (`--model`, `--backend`, `--set ...`, `--api-key-env NAME`; `env` is added to this
process's environment, e.g. the key), waits until it prints its URL (ready: loaded and warmed up), and on
exit stops it with SIGTERM (killed if it has not stopped within 30 s). The child's output (stdout and
stderr together) goes to a temporary log file, removed afterwards.

`serve_process(args, env=None, timeout_s=120, log_path=None) -> ServeProcess` is the same with the process
at hand (pass `log_path` to keep the log): `.url`, `.log_path`, `.log_text()`, `.process` (a Popen),
`.stop() -> exit code` (SIGTERM and wait; also what the context's exit does if the test has not stopped it).
`start_serve(args, ...)` starts one without waiting (`.wait_ready()` waits), to watch it while it loads.
The tiny model (`--model tiny --backend diffusers-eager`) is built under $HARNESS_CACHE_DIR: use the
`harness_cache` fixture (tests/conftest.py) so the child reuses the session's copy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 30.0


class ServeProcess:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.url = ""

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout_s: float = 120.0) -> str:
        """Wait for the URL line (the server is ready); the URL. Raises if the server exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log_text().splitlines():
                if line.startswith("http://"):
                    self.url = line.strip()
                    return self.url
            if self.process.poll() is not None:
                raise RuntimeError(f"harness serve exited with {self.process.returncode}:\n{self.log_text()}")
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"harness serve was not ready within {timeout_s} s:\n{self.log_text()}")

    def stop(self) -> int:
        """SIGTERM, then wait (killed after STOP_TIMEOUT_S); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_serve(
    args: Sequence[str], env: Mapping[str, str] | None = None, log_path: Path | None = None
) -> ServeProcess:
    """Start `python -m harness serve --port 0 ARGS` (default host 127.0.0.1) without waiting for it."""
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="harness-serve-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    child_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", "serve", "--port", "0", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            cwd=log_path.parent,
        )
    return ServeProcess(process, log_path)


@contextlib.contextmanager
def serve_process(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
    log_path: Path | None = None,
) -> Iterator[ServeProcess]:
    server = start_serve(args, env, log_path)
    try:
        server.wait_ready(timeout_s)
        yield server
    finally:
        server.stop()
        if log_path is None:  # a temporary log: the caller who wants it kept names one
            server.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def running_server(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float = 120.0
) -> Iterator[str]:
    """The base URL (http://127.0.0.1:PORT) of a ready server; stopped on exit."""
    with serve_process(args, env, timeout_s) as server:
        yield server.url
