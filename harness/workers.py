"""Workers: where batches run. The SUT drives one thread per worker, each pulling from the batcher.

A worker is anything with a `name` and `run(PromptBatch) -> ImageBatch`. The in-process worker calls
the backend directly; a process pool or a Ray actor is another Worker with the same two members, so
the batcher and the SUT stay unchanged when they arrive.
"""

from __future__ import annotations

from typing import Any, Protocol

from backends.base import Backend, ImageBatch, PromptBatch


class Worker(Protocol):
    name: str
    backend_name: str

    def run(self, batch: PromptBatch) -> ImageBatch: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class InProcessWorker:
    """Runs the backend in this process, on the SUT's worker thread."""

    def __init__(self, backend: Backend, name: str = "worker-0") -> None:
        self.backend = backend
        self.name = name
        self.backend_name = backend.name

    def run(self, batch: PromptBatch) -> ImageBatch:
        return self.backend.generate(batch)

    def describe(self) -> dict[str, Any]:
        return {**self.backend.describe(), "worker": self.name}

    def close(self) -> None:
        self.backend.close()
