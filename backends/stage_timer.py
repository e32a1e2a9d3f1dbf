"""Stage timing inside a backend: where one batch's time went.

Stages are contiguous: `mark(name)` ends the stage before it, so the stages of a batch add up to the
time from `start()` to `finish()`. Denoising steps are marked with `step()`.

On the CPU the clock is `perf_counter_ns`. On CUDA each boundary records a CUDA event; nothing is
synchronised until `finish()`, which the backend calls after its images are already on the host
(the one synchronisation the batch has anyway). Disabled, every call is a no-op, so the timed path
is what it would be without timing.

The same boundaries can also open named ranges, independently of timing: `torch.profiler`
ranges while harness/measure/profiling.py records a trace, so the Chrome trace shows the stages, and NVTX
ranges on CUDA (`profile.nvtx`), so Nsight Systems does. `set_annotations` turns them on for this
process; off (the default), nothing is opened.
"""

from __future__ import annotations

import time
from typing import Any

_ANNOTATE = {"profiler": False, "nvtx": False}


def set_annotations(*, profiler: bool | None = None, nvtx: bool | None = None) -> None:
    """Open named ranges at the stage boundaries of every StageTimer made from now on in this process."""
    if profiler is not None:
        _ANNOTATE["profiler"] = profiler
    if nvtx is not None:
        _ANNOTATE["nvtx"] = nvtx


class StageTimer:
    def __init__(self, enabled: bool, device_type: str = "cpu") -> None:
        self.enabled = enabled
        self.cuda = enabled and device_type == "cuda"
        self._profiler_ranges = _ANNOTATE["profiler"]
        self._nvtx = _ANNOTATE["nvtx"] and device_type == "cuda"
        # Backends install their boundary hooks only when something listens to them.
        self.active = enabled or self._profiler_ranges or self._nvtx
        self._marks: list[tuple[str, Any]] = []  # (stage that starts here, clock reading or event)
        self._steps: list[Any] = []
        self._range: Any = None  # the torch.profiler range of the current stage
        self._nvtx_open = False

    def _open_range(self, stage: str) -> None:
        self._close_range()
        if self._profiler_ranges:
            from torch.profiler import record_function

            self._range = record_function(stage)
            self._range.__enter__()
        if self._nvtx:
            import torch

            torch.cuda.nvtx.range_push(stage)
            self._nvtx_open = True

    def _close_range(self) -> None:
        if self._range is not None:
            self._range.__exit__(None, None, None)
            self._range = None
        if self._nvtx_open:
            import torch

            torch.cuda.nvtx.range_pop()
            self._nvtx_open = False

    def _now(self) -> Any:
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter_ns()

    def start(self, first_stage: str) -> None:
        if self._profiler_ranges or self._nvtx:
            self._open_range(first_stage)
        if self.enabled:
            self._marks = [(first_stage, self._now())]
            self._steps = []

    def mark(self, stage: str) -> None:
        """The current stage ends and `stage` begins."""
        if self._profiler_ranges or self._nvtx:
            self._open_range(stage)
        if self.enabled:
            self._marks.append((stage, self._now()))

    def step(self) -> None:
        """A denoising step ended (the first step starts at the mark of the denoise stage)."""
        if self.enabled:
            self._steps.append(self._now())

    def finish(self) -> tuple[dict[str, int], tuple[int, ...]]:
        """Stage durations (ns, summed when a stage recurs) and per-step durations (ns)."""
        self._close_range()
        if not self.enabled or not self._marks:
            return {}, ()
        end = self._now()
        if self.cuda:
            end.synchronize()
        points = [m[1] for m in self._marks] + [end]
        stages: dict[str, int] = {}
        for (name, _), a, b in zip(self._marks, points[:-1], points[1:], strict=True):
            stages[name] = stages.get(name, 0) + self._elapsed_ns(a, b)
        steps: tuple[int, ...] = ()
        starts = [m[1] for m in self._marks if m[0] == "denoise"]
        if self._steps and starts:
            bounds = [starts[0], *self._steps]
            steps = tuple(self._elapsed_ns(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        self._marks, self._steps = [], []
        return stages, steps

    def _elapsed_ns(self, a: Any, b: Any) -> int:
        if self.cuda:
            return int(a.elapsed_time(b) * 1e6)  # CUDA events report milliseconds
        return int(b - a)
