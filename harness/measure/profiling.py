"""Traces on demand (`[profile]`): a torch.profiler Chrome trace of a few batches after warm-up,
and NVTX ranges around the stages for Nsight Systems.

A BatchTracer sits between a worker and its backend, in whatever process runs the backend (the
harness process, or a worker process): it starts the profiler before the first timed batch, stops it
after `batches` batches, and writes `trace-<worker>.json`, which Perfetto (ui.perfetto.dev) and
chrome://tracing open. While it records, the backends' StageTimer opens a profiler range per stage
(text_encode, denoise, vae_decode, to_uint8), so the stages are named in the trace. Warm-up runs
before the tracer sees any batch, so compilation and first-call costs stay out of the trace.

Off (the default) nothing is wrapped: `make_tracer` returns None and workers call the backend as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from backends.stage_timer import set_annotations

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class TraceSettings:
    """What a worker needs to trace (picklable: it travels to worker processes)."""

    folder: str  # where trace-<worker>.json goes ("" = no torch.profiler trace)
    batches: int
    nvtx: bool


def trace_settings(profile: Any, run_dir: Path) -> TraceSettings | None:
    """From the config's [profile] section; None when neither a trace nor NVTX ranges were asked for."""
    if not (profile.trace or profile.nvtx):
        return None
    folder = str(run_dir / "profile") if profile.trace else ""
    # A trace is meant to be opened in Nsight as well as Perfetto: NVTX comes with it.
    return TraceSettings(folder=folder, batches=profile.trace_batches, nvtx=profile.nvtx or profile.trace)


class BatchTracer:
    """Records the first `settings.batches` batches it runs with torch.profiler."""

    def __init__(self, settings: TraceSettings, worker: str) -> None:
        self.settings = settings
        self.worker = worker
        self.path = Path(settings.folder) / f"trace-{worker}.json" if settings.folder else None
        self._profiler: Any = None
        self._thread: int | None = None
        self._seen = 0
        self._done = False  # one trace per worker: after it stops, later calls (warm TTFI) run untraced
        set_annotations(nvtx=settings.nvtx)
        if self.path is not None:
            _init_profiler_here()

    @property
    def recording(self) -> bool:
        return self._profiler is not None

    def run(self, generate: Callable[[Any], T], batch: Any) -> T:
        if self.path is None or self._done:
            return generate(batch)
        if self._profiler is None:
            self._start()
        try:
            return generate(batch)
        finally:
            self._seen += 1
            if self._seen >= self.settings.batches:
                self.stop()

    def _start(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
        self._profiler = profile(activities=activities, record_shapes=False, with_stack=False)
        self._profiler.__enter__()
        self._thread = threading.get_ident()
        set_annotations(profiler=True)
        log.info("profile: %s records %d batch(es) with torch.profiler", self.worker, self.settings.batches)

    def stop(self) -> None:
        """Ends the recording and writes the trace (also when the run ends before `batches` batches).

        The profiler must stop on the thread that started it (another thread's stop crashes the
        process): the SUT calls `Worker.end_of_run` on the worker's thread for that."""
        self._done = True
        if self._profiler is None:
            return
        if threading.get_ident() != self._thread:
            log.warning("profile: %s is still recording on another thread; no trace written", self.worker)
            return
        set_annotations(profiler=False)
        profiler, self._profiler = self._profiler, None
        profiler.__exit__(None, None, None)
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(self.path))
        log.info("profile: wrote %s (%d batch(es))", self.path, self._seen)


def _init_profiler_here() -> None:
    """Kineto registers itself on the first profiler use and wants that to be on the main thread;
    an empty session here, off the clock, keeps it from complaining when a SUT thread starts one."""
    from torch.profiler import profile

    with profile():
        pass


def make_tracer(settings: TraceSettings | None, worker: str) -> BatchTracer | None:
    return BatchTracer(settings, worker) if settings is not None else None


def describe(profile: Any, run_dir: Path) -> dict[str, Any]:
    """What the manifest records: which of the profiling aids were on, and where their files are."""
    settings = trace_settings(profile, run_dir)
    return {
        "trace": profile.trace,
        "trace_batches": profile.trace_batches if profile.trace else None,
        "trace_folder": settings.folder if settings and settings.folder else None,
        "nvtx": bool(settings and settings.nvtx),
        "loadgen_trace": profile.loadgen_trace,
    }


def outputs(profile: Any, run_dir: Path) -> dict[str, Any]:
    """The trace files this run wrote, for the summary. LoadGen creates an empty mlperf_log_trace.json
    even with its trace off; that empty file is removed so that nobody mistakes it for a trace."""
    loadgen_trace = run_dir / "mlperf_log_trace.json"
    if not profile.loadgen_trace and loadgen_trace.exists() and loadgen_trace.stat().st_size == 0:
        loadgen_trace.unlink()
    folder = run_dir / "profile"
    return {
        "traces": sorted(str(p) for p in folder.glob("trace-*.json")) if folder.is_dir() else [],
        "loadgen_trace": str(loadgen_trace) if loadgen_trace.exists() else None,
    }
