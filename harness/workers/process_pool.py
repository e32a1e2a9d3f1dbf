"""Worker processes: one per device (or per CPU slice), each loading the backend once.

LoadGen, the batcher and the SUT stay in the main process. Each ProcessWorker is driven by one SUT
thread: it sends a PromptBatch down a pipe and waits for the ImageBatch, checking all the while that
the child is alive, so a worker that dies (segfault, OOM kill) fails the run at once instead of
leaving LoadGen waiting.

Children are started with the "spawn" method: CUDA cannot be used in a forked child, and a fresh
interpreter keeps torch's thread pools from being inherited half-initialised.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from backends.base import ImageBatch, ModelSpec, PromptBatch
from harness.measure.profiling import TraceSettings, make_tracer

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a waiting SUT thread checks that its child is still alive
PREPROCESS = "preprocess"  # a request to prepare prompts (tokenize) instead of a PromptBatch


class WorkerDied(RuntimeError):
    """The worker process exited while it owed an answer."""


class RemoteError(RuntimeError):
    """The backend raised inside the worker process; the message carries its type and text."""

    def __init__(self, message: str, remote_traceback: str) -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a child needs to build its backend (all of it picklable)."""

    backend: str
    model: ModelSpec
    options: Any  # the backend's Options dataclass, already validated in the parent
    warmup: PromptBatch | None
    cpu_cores: tuple[int, ...] = ()  # pin the child to these cores; () = no pinning
    env: tuple[tuple[str, str], ...] = ()  # e.g. CUDA_VISIBLE_DEVICES
    trace: TraceSettings | None = None  # [profile]: trace the first timed batches, NVTX ranges
    name: str = "worker"


def _child_main(conn: Connection, spec: WorkerSpec) -> None:  # runs in the worker process
    for key, value in spec.env:
        os.environ[key] = value
    if spec.cpu_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(spec.cpu_cores))
    try:
        from backends.registry import create_backend

        backend = create_backend(spec.backend, spec.model, spec.options)
        backend.load()
        if spec.warmup is not None:
            backend.warmup(spec.warmup)
        tracer = make_tracer(spec.trace, spec.name)
        conn.send(("ready", backend.describe(), os.getpid()))
    except BaseException as exc:  # report any load failure to the parent, then exit
        conn.send(("load-error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    try:
        while True:
            batch = conn.recv()
            if batch is None:
                break
            if isinstance(batch, tuple) and batch[0] == PREPROCESS:  # the QSL's load_samples, off the clock
                try:
                    preprocess = getattr(backend, "preprocess_prompts", None)
                    conn.send(("ok", preprocess(batch[1], batch[2]) if preprocess else None, 0))
                except Exception as exc:
                    conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
                continue
            start = time.perf_counter_ns()
            try:
                result = tracer.run(backend.generate, batch) if tracer else backend.generate(batch)
            except Exception as exc:  # the parent decides what a failure means
                conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
                continue
            conn.send(("ok", result, time.perf_counter_ns() - start))
    except (EOFError, KeyboardInterrupt):
        pass  # the parent went away or the user pressed Ctrl-C: just stop
    finally:
        if tracer is not None:
            tracer.stop()
        backend.close()


class ProcessWorker:
    def __init__(self, spec: WorkerSpec, name: str) -> None:
        self.name = name
        self.backend_name = spec.backend
        self.spec = spec
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child_conn, spec), name=name, daemon=True)
        self._child_conn = child_conn
        self.description: dict[str, Any] = {}
        self.pid: int | None = None
        self.busy_ns = 0
        # One conversation at a time on the pipe: the SUT thread's batches and the QSL's preprocess
        # requests (LoadGen may load samples while batches run, in accuracy mode).
        self._pipe_lock = threading.Lock()

    def start(self) -> None:
        self._proc.start()
        self._child_conn.close()  # the child holds its own end now

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Block until the child has loaded and warmed up its backend."""
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll(POLL_S):
            if not self._proc.is_alive():
                raise WorkerDied(f"{self.name} exited with code {self._proc.exitcode} while loading")
            if time.monotonic() > deadline:
                raise WorkerDied(f"{self.name} did not finish loading within {timeout_s:.0f} s")
        msg = self._conn.recv()
        if msg[0] != "ready":
            raise RemoteError(f"{self.name} could not load backend {self.backend_name!r}: {msg[1]}", msg[2])
        self.description, self.pid = msg[1], msg[2]
        return self.description

    def run(self, batch: PromptBatch) -> ImageBatch:
        result, busy_ns = self._ask(batch)
        self.busy_ns += busy_ns
        return result  # type: ignore[no-any-return]

    def preprocess_prompts(self, prompts: Sequence[str], negative_prompts: Sequence[str]) -> list[Any] | None:
        """The backend's PromptPreprocessor, run in the worker process: the QSL tokenizes at load time
        (outside the timed path) and the token ids ride along with every batch, as in-process."""
        return self._ask((PREPROCESS, list(prompts), list(negative_prompts)))[0]  # type: ignore[no-any-return]

    def _ask(self, message: Any) -> tuple[Any, int]:
        with self._pipe_lock:
            try:
                self._conn.send(message)
            except (BrokenPipeError, OSError) as exc:
                raise WorkerDied(f"{self.name} (pid {self.pid}) is gone: {exc}") from exc
            while not self._conn.poll(POLL_S):
                if not self._proc.is_alive():
                    raise WorkerDied(f"{self.name} (pid {self.pid}) exited with code {self._proc.exitcode}")
            try:
                msg = self._conn.recv()
            except EOFError as exc:
                raise WorkerDied(f"{self.name} (pid {self.pid}) closed its pipe") from exc
        if msg[0] == "error":
            raise RemoteError(msg[1], msg[2])
        return msg[1], msg[2]

    def describe(self) -> dict[str, Any]:
        return {**self.description, "worker": self.name, "pid": self.pid, "cpu_cores": list(self.spec.cpu_cores)}

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._conn.close()


def with_threads(options: Any, threads: int) -> Any:
    """The same options with `num_threads` set, for backends that have it."""
    if any(f.name == "num_threads" for f in dataclasses.fields(options)):
        return dataclasses.replace(options, num_threads=threads)
    return options


def cpu_slices(n_workers: int, cores: list[int]) -> list[tuple[int, ...]]:
    """Split the cores between workers, keeping one for LoadGen when there are enough.

    With fewer cores than workers + 1 the slices share cores; the workers then each get one
    thread, and the overhead benchmark shows what that costs.
    """
    usable = cores[:-1] if len(cores) > n_workers else cores
    if len(usable) >= n_workers:
        per = len(usable) // n_workers
        return [tuple(usable[i * per : (i + 1) * per]) for i in range(n_workers)]
    return [(usable[i % len(usable)],) for i in range(n_workers)]
