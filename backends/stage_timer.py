"""Stage timing inside a backend: where one batch's time went.

Stages are contiguous: `mark(name)` ends the stage before it, so the stages of a batch add up to the
time from `start()` to `finish()`. Denoising steps are marked with `step()`.

On the CPU the clock is `perf_counter_ns`. On CUDA each boundary records a CUDA event; nothing is
synchronised until `finish()`, which the backend calls after its images are already on the host
(the one synchronisation the batch has anyway). Disabled, every call is a no-op, so the timed path
is what it would be without timing.
"""

from __future__ import annotations

import time
from typing import Any


class StageTimer:
    def __init__(self, enabled: bool, device_type: str = "cpu") -> None:
        self.enabled = enabled
        self.cuda = enabled and device_type == "cuda"
        self._marks: list[tuple[str, Any]] = []  # (stage that starts here, clock reading or event)
        self._steps: list[Any] = []

    def _now(self) -> Any:
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter_ns()

    def start(self, first_stage: str) -> None:
        if self.enabled:
            self._marks = [(first_stage, self._now())]
            self._steps = []

    def mark(self, stage: str) -> None:
        """The current stage ends and `stage` begins."""
        if self.enabled:
            self._marks.append((stage, self._now()))

    def step(self) -> None:
        """A denoising step ended (the first step starts at the mark of the denoise stage)."""
        if self.enabled:
            self._steps.append(self._now())

    def finish(self) -> tuple[dict[str, int], tuple[int, ...]]:
        """Stage durations (ns, summed when a stage recurs) and per-step durations (ns)."""
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
