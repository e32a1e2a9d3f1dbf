"""Workers: where batches run. The SUT drives one thread per worker, each pulling from the batcher.

A worker is anything with a `name` and `run(PromptBatch) -> ImageBatch`. The in-process worker calls
the backend directly; a process pool or a Ray actor is another Worker with the same two members, so
the batcher and the SUT stay unchanged when they arrive.
"""

from __future__ import annotations

from typing import Any, Protocol

from backends.base import Backend, ImageBatch, PromptBatch
from harness.measure.profiling import BatchTracer


class Worker(Protocol):
    name: str
    backend_name: str

    def run(self, batch: PromptBatch) -> ImageBatch: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class InProcessWorker:
    """Runs the backend in this process, on the SUT's worker thread."""

    def __init__(self, backend: Backend, name: str = "worker-0", tracer: BatchTracer | None = None) -> None:
        self.backend = backend
        self.name = name
        self.backend_name = backend.name
        self.tracer = tracer

    def run(self, batch: PromptBatch) -> ImageBatch:
        if self.tracer is not None:
            return self.tracer.run(self.backend.generate, batch)
        return self.backend.generate(batch)

    def describe(self) -> dict[str, Any]:
        return {**self.backend.describe(), "worker": self.name}

    def end_of_run(self) -> None:
        """Called by the SUT on this worker's thread when the run ends (the tracer's thread)."""
        if self.tracer is not None:
            self.tracer.stop()

    def close(self) -> None:
        self.end_of_run()
        self.backend.close()
