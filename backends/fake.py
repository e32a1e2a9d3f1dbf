"""A supported backend that runs no model: deterministic images from the sample index.

It exercises the LoadGen plumbing, measures harness overhead, and injects failures for tests:
`--set backend.latency_ms=20` sleeps per call, `--set backend.fail_at_call=3` raises on the third,
`--set backend.oom_above_batch=4` raises MemoryError on batches larger than 4 (a batch-size ramp's end);
`--set backend.full_run_oom_above_batch=4` does so only when the model runs more than one denoising step
(a full run needs more memory than `fit`'s 1-step probe); `--set backend.gil_hold_ms=2` runs Python for
2 ms per call, holding the GIL (tools/sut_overhead.py: Python work in worker threads).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from backends.base import BackendError, ImageBatch, ModelSpec, PromptBatch


@dataclass(frozen=True)
class FakeOptions:
    latency_ms: float = 0.0  # per call
    per_image_latency_ms: float = 0.0  # added per image in the batch
    fail_at_call: int = 0  # raise on this call of generate (1-based); 0 = never
    # Kill the process on this call (os._exit): simulates a worker process dying. Only for worker
    # processes (workers.processes / workers.count > 1): in-process it would end the harness.
    exit_at_call: int = 0
    # Apply fail_at_call / exit_at_call only in the worker of this name (e.g. "worker-1"); the
    # worker pool names each process in HARNESS_WORKER_NAME. "" = in every worker.
    only_worker: str = ""
    # Raise MemoryError ("out of memory", like torch.cuda.OutOfMemoryError) for batches larger than this;
    # 0 = never. Warm-up is exempt, as for fail_at_call: the failure comes inside the timed run.
    oom_above_batch: int = 0
    # The same, only where model.steps > 1: fit's 1-step probes fit, a full run at that batch does not.
    full_run_oom_above_batch: int = 0
    # Per call, after the latency: a pure Python busy loop for this long, as Python work in a worker thread
    # (uint8 conversion, image hooks, unpickling) would run. Not a sleep: time.sleep releases the GIL, a
    # running loop keeps it, handing it over only when another thread has waited the interpreter's switch
    # interval (sys.getswitchinterval(), 5 ms by default), which is what delays a Python SUT's issue_queries.
    gil_hold_ms: float = 0.0
    # Hand back one batch of images made once per batch size (the first batch's): a null backend whose own
    # cost is next to nothing, so that tools.sut_overhead sees the SUT's cost alone. Performance runs only:
    # the images no longer follow the sample index.
    reuse_images: bool = False


class FakeBackend:
    name = "fake"
    Options = FakeOptions

    def __init__(self, model: ModelSpec, options: FakeOptions) -> None:
        if options.latency_ms < 0 or options.per_image_latency_ms < 0:
            raise BackendError(f"fake backend: latencies must be >= 0, got {options}")
        if options.fail_at_call < 0:
            raise BackendError(f"fake backend: fail_at_call must be >= 0, got {options.fail_at_call}")
        if not (math.isfinite(options.gil_hold_ms) and options.gil_hold_ms >= 0):
            raise BackendError(f"fake backend: gil_hold_ms must be a finite number >= 0, got {options.gil_hold_ms}")
        for key in ("oom_above_batch", "full_run_oom_above_batch"):
            if getattr(options, key) < 0:
                raise BackendError(f"fake backend: {key} must be >= 0, got {getattr(options, key)}")
        self.model = model
        self.options = options
        self._calls = 0
        self._lock = threading.Lock()
        self._reused: dict[int, np.ndarray] = {}  # batch size -> images, for reuse_images

    def load(self) -> None:
        pass

    def warmup(self, batch: PromptBatch) -> None:
        pass  # warm-up calls do not count towards fail_at_call

    @staticmethod
    def image_for(sample_index: int, height: int, width: int) -> np.ndarray:
        """The image the fake backend returns for a sample: a function of the index alone."""
        rng = np.random.default_rng(sample_index)
        return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)

    def generate(self, batch: PromptBatch) -> ImageBatch:
        with self._lock:
            self._calls += 1
            call = self._calls
        targeted = not self.options.only_worker or os.environ.get("HARNESS_WORKER_NAME") == self.options.only_worker
        if targeted and self.options.fail_at_call and call == self.options.fail_at_call:
            raise RuntimeError(f"fake backend: injected failure on call {call}")
        if targeted and self.options.exit_at_call and call == self.options.exit_at_call:
            os._exit(3)
        limits = {"oom_above_batch": self.options.oom_above_batch}
        if self.model.steps > 1:
            limits["full_run_oom_above_batch"] = self.options.full_run_oom_above_batch
        for key, limit in limits.items():
            if limit and len(batch) > limit:
                size, steps = len(batch), self.model.steps
                raise MemoryError(f"fake backend: out of memory on a batch of {size} at {steps} steps ({key}={limit})")
        delay_s = (self.options.latency_ms + self.options.per_image_latency_ms * len(batch)) / 1e3
        if delay_s > 0:
            time.sleep(delay_s)
        if self.options.gil_hold_ms > 0:
            _run_python_for(self.options.gil_hold_ms)
        if self.options.reuse_images and len(batch) in self._reused:
            return ImageBatch(images=self._reused[len(batch)])
        h, w = self.model.height, self.model.width
        images = np.ascontiguousarray(np.stack([self.image_for(i, h, w) for i in batch.sample_indices]))
        if self.options.reuse_images:
            images.flags.writeable = False  # shared by every batch of this size
            self._reused.setdefault(len(batch), images)
        return ImageBatch(images=images)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": "none", "dtype": "uint8", **asdict(self.options)}

    def close(self) -> None:
        pass


def _run_python_for(ms: float) -> None:
    """Execute Python bytecode for `ms` milliseconds: the GIL stays with this thread except at the
    interpreter's switch interval, when a waiting thread asks for it."""
    end_ns = time.perf_counter_ns() + int(ms * 1e6)
    while time.perf_counter_ns() < end_ns:
        pass
